"""Edits on a model with known mechanisms: ablating the induction head's output breaks induction."""

import torch

from paramlens.components import ablated
from paramlens.components.edit import task_accuracies
from paramlens.core.weights import select


class WholeMatrix:
    """A method stub whose component 0 of every target is the target's whole weight."""

    name = "spd"

    @staticmethod
    def component_matrix(dec, target, index):
        return target.matrix(dec).detach() if index == 0 else torch.zeros(target.shape)


def test_ablating_the_layer_1_output_drops_induction_accuracy_and_nothing_else_changes(induction_model):
    model = induction_model
    task = model.mechanism_task(model.source().sample(128, torch.Generator().manual_seed(0)))
    targets = select(model, ["blocks.*.attn.o"])
    replaced = ablated(WholeMatrix, model, model, targets, [{"blocks.1.attn.o": 0}])
    assert set(replaced) == {"blocks.1.attn.o"} and torch.count_nonzero(replaced["blocks.1.attn.o"]) == 0
    acc = task_accuracies(model, replaced, task)
    assert acc["induction"]["before"] > 0.9 and acc["induction"]["after"] < 0.3
    assert ablated(WholeMatrix, model, model, targets, [{"blocks.1.attn.o": 1}])["blocks.1.attn.o"].equal(
        model.blocks[1].attn.o.weight)  # an empty piece leaves the weight exactly as it is
