2048 SHA256:6Z3VB+jR1HPnORHB5HuQytqWXZpw/KnicReCiZczQv4 gitmouth-test-rsa2048-pkcs8 (RSA)
