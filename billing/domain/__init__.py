"""The billing domain: plain values and rules, no I/O and no clock reads."""
