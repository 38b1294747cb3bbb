1024 SHA256:VAck9fOs1Ma+BYIkYLkOU5GatD4w/7qsm72bQOkDt7U gitmouth-test-rsa1024-openssh (RSA)
