2560 SHA256:kyeIA28V0W1uvV1ikkuDz1cG5o1BP82bFlLLGS5muVY gitmouth-test-rsa2560-openssh (RSA)
