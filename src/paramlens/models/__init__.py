"""Model zoo: models whose mechanisms are known, for scoring ParamLens methods against ground truth."""
