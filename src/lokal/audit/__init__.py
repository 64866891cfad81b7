"""`lokal audit`: bias probes and group fairness with confidence intervals; results feed `lokal card`.

result.py  the versioned audit result (written first, rendered second)
stats.py   bootstrap confidence intervals shared by every suite
"""
