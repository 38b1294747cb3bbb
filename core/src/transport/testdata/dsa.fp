1024 SHA256:2rCHl3e+2fm4T3Kn4G+WuuwvEaMdgWmR8zORBWqn/SI gitmouth-test-dsa (DSA)
