"""Routing: which channel a send request goes out on, and why (contract §7, rules R1-R9)."""
