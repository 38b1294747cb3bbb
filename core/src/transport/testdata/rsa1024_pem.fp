1024 SHA256:cSEIT1SsKoALYQCpT2r3PgzaxcnlbiQhk3eINvT9lkQ gitmouth-test-rsa1024-pem (RSA)
