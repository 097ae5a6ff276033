"""Speculative decoding: drafters (ngram.py), the policy that decides who drafts how much
(speculator.py), verification and KV rollback (verify.py), the acceptance rule (rejection.py)."""
