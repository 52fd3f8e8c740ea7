"""Subnetworks found by continuous sparsification of weight masks; the bigram subnetwork of a language model.

>>> from paramlens.subnetwork import sparsify, bigram_subnetwork, BigramConfig
"""

from paramlens.subnetwork.bigram import BigramConfig, BigramModel, BigramSubnetwork, bigram_subnetwork
from paramlens.subnetwork.sparsify import SparseMask, SparsifyConfig, sparsify

__all__ = ["sparsify", "SparsifyConfig", "SparseMask", "bigram_subnetwork", "BigramConfig", "BigramSubnetwork",
           "BigramModel"]
