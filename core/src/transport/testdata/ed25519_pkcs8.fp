256 SHA256:uxL+qPf4FWQtT77gdIjNgJ2fPTWXpgu0xcy0Xc9c+Ec openssl-genpkey-ed25519 (ED25519)
