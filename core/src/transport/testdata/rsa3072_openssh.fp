3072 SHA256:IBoG9svYwewCsuS6U7x26Ez3m/ZMhC+yPQpnHndq8k0 gitmouth-test-rsa3072-openssh (RSA)
