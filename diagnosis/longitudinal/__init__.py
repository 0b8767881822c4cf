"""A patient over time, in plain Python (imports no Django): registration of a follow-up to its baseline
(:mod:`.registration`), matching findings across time points (:mod:`.matching`), volume growth and
doubling time (:mod:`.growth`) and RECIST 1.1 response (:mod:`.recist`).

Arrays follow :mod:`annotation.imaging`: indexed ``[k, j, i]``, spacing in mm in that order, LPS mm.
"""
