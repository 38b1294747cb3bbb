2048 SHA256:UjgZRcp3CWrjPrwPADFlfQWqU/MSeatqH/YSpO+suFQ gitmouth-test-rsa2048-openssh (RSA)
