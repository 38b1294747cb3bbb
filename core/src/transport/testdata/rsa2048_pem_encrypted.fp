2048 SHA256:/RGTnu3t/9VCqOommrXVUnE4zkm5i8NYNHI0H/vN4pw gitmouth-test-encrypted-pem (RSA)
