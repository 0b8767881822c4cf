"""Similar cases: a weighted similarity over structured case features, ranking and precision@k. Imports no Django.

See :mod:`.cases` for the features, each feature's similarity and the weighted sum.
"""

from .cases import (
    AGE_SCALE_YEARS,
    COMPOSITION_SOLIDITY,
    DEFAULT_WEIGHTS,
    FEATURES,
    IMPRESSION_ORDER,
    SIZE_SCALE_MM,
    CaseFeatures,
    FindingFeatures,
    RankedCase,
    Similarity,
    WeightsError,
    case_similarity,
    feature_similarities,
    finding_size_mm,
    leave_one_out_precision,
    precision_at_k,
    random_precision_at_k,
    rank_similar,
    validate_weights,
)

from .cases import __all__  # noqa: E402,F401 - the same public names as the module
