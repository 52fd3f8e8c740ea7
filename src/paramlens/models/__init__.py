"""Model zoo: models whose mechanisms are known, for scoring ParamLens methods against ground truth."""

from paramlens.models import registry  # noqa: F401  (registers the zoo's names with paramlens.core.resolve)
