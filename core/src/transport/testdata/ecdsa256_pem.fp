256 SHA256:3WxZd/v7EpQ/Mln/XFcPx+Y1BFnnqcmOOFWDrqIgpQ8 gitmouth-test-ecdsa-pem (ECDSA)
