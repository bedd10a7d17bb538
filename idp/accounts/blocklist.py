"""Common passwords refused whatever their length (NIST SP 800-63B §3.1.1.2, ASVS 5.0 V6.2.4).

A short list is enough to stop the passwords that credential-stuffing lists try first; the length
rule does the rest. Entries are compared case-insensitively after NFKC normalisation, and a password
made of one of them plus trailing digits or punctuation ("Azerty123!") is refused too.
"""

from __future__ import annotations

_LIST = """
123456 1234567 12345678 123456789 1234567890 12345678910 0123456789 987654321 9876543210 111111 11111111
000000 00000000 112233 121212 123123 123123123 123321 654321 666666 696969 777777 888888 999999 1q2w3e4r
1q2w3e4r5t 1qaz2wsx 1qazxsw2 qwerty qwertyuiop qwerty123 qwertz azerty azertyuiop azerty123 azertyui
azerty1234 wxcvbn wxcvbnqsd qsdfghjkl aqwzsxedc asdfghjkl zxcvbnm password password1 password123
passw0rd p@ssw0rd p@ssword motdepasse motdepasse1 motdepasse123 mot2passe mdpmdpmdp changeme changeme123
bienvenue bienvenue1 bienvenue123 welcome welcome1 welcome123 letmein iloveyou jetaime jetaime1 jetaime123
soleil soleil123 doudou doudou123 chouchou chouchou1 loulou loulou123 marseille marseille13 paris75 paris123
parisien nicolas nicolas1 thomas thomas1 camille camille1 julien julien1 maxime maxime1 antoine antoine1
alexandre isabelle isabelle1 nathalie nathalie1 sandrine stephanie celine celine1 sophie sophie1 caroline
olivier olivier1 pierre pierre1 michel michel1 philippe philippe1 chocolat chocolat1 princesse princesse1
football football1 olympique marseille1 liverpool arsenal chelsea barcelona realmadrid superman batman
dragon dragon1 monkey monkey1 master master1 shadow sunshine princess trustno1 starwars pokemon pokemon1
abc123 abcd1234 abcdef abcdefgh abcdefg1 aaaaaaaa aaaaaa qwerty1 qwerty12 admin admin123 administrateur
root toor secret secret123 ameli ameli123 ameli2023 ameli2024 ameli2025 ameli2026 amelie amelie1
assurance assurancemaladie securite securitesociale secu1234 cpam cpam1234 monameli moncompte moncompteameli
vitale cartevitale sante sante123 docteur medecin france france1 france123 francais marianne republique
azertyuiop1 azerty12 azerty1 a1234567 a12345678 aa123456 qwe123 qweqwe qweasd qweasdzxc zaq12wsx
11223344 12341234 12344321 147258369 159357 159753 147852369 123654 123654789 789456123 741852963
20202020 20232023 20242024 20252025 20262026 janvier fevrier mars2024 decembre printemps hiver2024 ete2024
"""
COMMON_PASSWORDS: frozenset[str] = frozenset(_LIST.split())


def is_common(candidate: str) -> bool:
    """True for a listed password, case-insensitively, also with trailing digits/punctuation added."""
    lowered = candidate.casefold()
    if lowered in COMMON_PASSWORDS:
        return True
    stripped = lowered.rstrip("0123456789!?.*#@$%&_-+= ")
    return len(stripped) >= 4 and stripped in COMMON_PASSWORDS
