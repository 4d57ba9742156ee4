"""Who a customer is: one profile across phone and BSUID keys (contract §6, rules I1-I10)."""
