256 SHA256:fKkXuMkpIpGborbK8k9BldQ5dLryzE4aNOztievjhJ0 gitmouth-test-ecdsa (ECDSA)
