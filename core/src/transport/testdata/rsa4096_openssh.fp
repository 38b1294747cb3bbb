4096 SHA256:VgDU/7QXJkC2r28SvMP3biKW8Y1Lz1OIz/eF7nDV3/g gitmouth-test-rsa4096-openssh (RSA)
