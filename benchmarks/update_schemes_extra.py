"""The schemes fitted on the training samples, built by planning.schemes:
the searched sparse update (sparse-search: planning.contribution's table,
planning.sparse_search, planning.search_trials), TraDy (planning.trady:
sampled layers resampled every epoch) and low-rank Adam layers
(planning.lowrank). Each returns an update_schemes_methods.Scheme; a
budget the scheme cannot meet gives a Scheme with no plan and the reason.
"""

import pathlib

import tflm_training
from benchmarks import update_schemes_methods as methods
from planning import contribution, lowrank, schemes, trady
from tflm_training import channel_sampler
from tflm_training import plan as tt_plan

# -- sparse-search: contribution analysis + evolutionary search ---------------------


def contribution_table(model_bytes, samples, settings, config, seed, cache_path):
    """planning.contribution's analysis on the seed's TRAINING samples only
    (it holds out part of them itself): weight ratios of the last
    config["analysis_layers"] layers, bias depths over the last
    config["analysis_bias_layers"] (0 or absent: all); cached in
    cache_path."""
    pathlib.Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    return contribution.analyze(
        model_bytes,
        samples.train_x,
        samples.train_y,
        learning_rate=settings.learning_rate,
        momentum=settings.momentum,
        batch_size=settings.batch_size,
        qas=settings.qas,
        epochs=config["analysis_epochs"],
        samples=config["analysis_samples"],
        val_samples=config["analysis_val_samples"],
        seeds=(seed,),
        max_layers=config["analysis_layers"],
        max_bias_layers=config.get("analysis_bias_layers") or None,
        metric=config.get("analysis_metric", "accuracy"),
        cache_path=str(cache_path),
    )


def analysis_data(samples, config):
    """The training and held-out split contribution_table measured on."""
    return contribution.prepare_data(
        samples.train_x,
        samples.train_y,
        samples=config["analysis_samples"],
        val_samples=config["analysis_val_samples"],
    )


def sparse_search_scheme(model_bytes, budget, settings, table, seed, trials=None):
    """The searched plan; with trials=(data, top, cache_path), the best
    measured of the search's finalists (planning.search_trials)."""
    if trials is not None:
        data, top, cache_path = trials
        trials = (data, top, str(cache_path))
    inputs = schemes.Inputs(
        settings.plan_settings(), budget=budget, seed=seed, contributions=table, trials=trials
    )
    try:
        built = schemes.build("sparse-search", model_bytes, inputs)
    except schemes.BUDGET_ERRORS as error:
        return methods.Scheme("sparse-search", budget, None, reason=str(error), over_budget=True)
    result = built.result
    return methods.Scheme(
        "sparse-search",
        budget,
        result.plan,
        info={
            "genome": list(result.genome),
            "analysed_layers": list(result.layers),
            "predicted_delta": result.score,
            "metric": result.metric,
            "arena": result.arena,
            "evaluations": result.evaluations,
            "searched_genome": list(built.searched.genome),
            "trials": [t.as_dict() for t in result.trials or ()],
        },
    )


# -- TraDy ----------------------------------------------------------------------------


class SampledSchedule:
    """A plan with sampled layers: one Trainer, begin_epoch(epoch) before
    each epoch's pass (the runtime redraws the channels)."""

    def __init__(self, model_bytes, plan):
        self.model_bytes = model_bytes
        self.plan = plan

    def trainer(self, seed):
        return tflm_training.Trainer(self.model_bytes, self.plan)

    def begin_epoch(self, trainer, epoch, seed):
        trainer.begin_epoch(epoch)
        return trainer

    def epoch_plans(self, epochs):
        """Static plans with each epoch's drawn channels (for the metrics)."""
        plans = []
        for epoch in range(epochs):
            drawn = channel_sampler.sample_channels(self.plan, epoch)
            layers = []
            for layer in self.plan.layers:
                if layer.update == "sampled":
                    channels = list(drawn.get(layer.operator_index, []))
                    if not channels:
                        continue
                    layers.append(tt_plan.LayerPlan(layer.operator_index, "weights", channels))
                else:
                    layers.append(
                        tt_plan.LayerPlan(layer.operator_index, layer.update, list(layer.channels))
                    )
            plans.append(
                tflm_training.TrainingPlan.for_model(
                    self.model_bytes,
                    layers,
                    learning_rate=self.plan.learning_rate,
                    momentum=self.plan.momentum,
                    batch_size=self.plan.batch_size,
                    qas=self.plan.qas,
                    residual=self.plan.residual,
                    gradient_bits=self.plan.gradient_bits,
                )
            )
        return plans


def trady_ranking(model_bytes, samples, settings, config, seed):
    """planning.trady's layer ranking on the seed's TRAINING samples."""
    return trady.rank_layers(
        model_bytes,
        samples.train_x,
        samples.train_y,
        samples=config["trady_samples"],
        max_layers=config["trady_layers"] or None,
        learning_rate=settings.learning_rate,
        momentum=settings.momentum,
        batch_size=settings.batch_size,
        qas=settings.qas,
        seed=seed,
        gradient_bits=settings.gradient_bits,
    )


def trady_scheme(model_bytes, budget, ranking, seed):
    """planning.trady's sampled plan of `ranking` within `budget`."""
    inputs = schemes.Inputs(ranking.settings, budget=budget, seed=seed, ranking=ranking)
    try:
        result = schemes.build("trady", model_bytes, inputs).result
    except schemes.BUDGET_ERRORS as error:
        return methods.Scheme("trady", budget, None, reason=str(error), over_budget=True)
    return methods.Scheme(
        "trady",
        budget,
        None,
        schedule=SampledSchedule(model_bytes, result.plan),
        info={
            "candidates": list(result.candidates),
            "dropped": list(result.dropped),
            "pool": result.pool,
            "arena": result.arena,
            "ranked": [layer.operator for layer in ranking.layers],
        },
    )


# -- low-rank ---------------------------------------------------------------------------


def lowrank_scheme(model_bytes, budget, settings):
    """planning.lowrank's plan for `budget` (the one deploy.py --scheme
    lowrank trains): Adam at settings.lowrank_learning_rate on the
    projected gradients of the FC / pointwise layers nearest the logits,
    at the largest ranks that fit, and the classifier by SGD."""
    inputs = schemes.Inputs(
        settings.plan_settings(), budget=budget, adam_learning_rate=settings.lowrank_learning_rate
    )
    try:
        result = schemes.build("lowrank", model_bytes, inputs).result
    except schemes.BUDGET_ERRORS as error:
        return methods.Scheme("lowrank", budget, None, over_budget=True, reason=str(error))
    except ValueError as error:
        return methods.Scheme("lowrank", budget, None, reason=str(error))
    return methods.Scheme(
        "lowrank",
        budget,
        result.plan,
        info={"ranks": result.ranks, "arena": result.arena, "refresh_steps": lowrank.REFRESH_STEPS},
    )
