256 SHA256:wXiNUQvSRrqkdid7p3Ryd51kxyrKwNjnT15NtNLuRUM gitmouth-test-ecdsa256-pkcs8 (ECDSA)
