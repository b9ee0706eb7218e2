"""Offline calibration of the compute-optimal policy (``ttc-serve calibrate``) and its held-out
benchmark (``ttc-serve bench``): a strategy × budget grid over a question set, run through the same
engine the service uses, with resumable results."""
