2048 SHA256:L9w+UPlx7JOvBnc4uXkuu3UUv9xrWQCk/ZLGQBdGRVY gitmouth-test-rsa2048-pem (RSA)
