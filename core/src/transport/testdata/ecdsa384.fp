384 SHA256:XWBoXL+JvSkZDTRAsHbsz8kNdsFzB/a2a7rU0+5D5bI gitmouth-test-ecdsa384 (ECDSA)
