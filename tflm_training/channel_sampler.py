"""TraDy channel sampling in pure Python: the same draw as the C runtime
(runtime/training/tt_channel_sampler.{h,c}), bit for bit.

    sample_channels(plan, epoch) == {op: Trainer.selected_channels()[op]}
    for every "sampled" layer, after Trainer.begin_epoch(epoch).

Layers a plan marks "sampled" train, in each epoch, a random subset of
their candidate output channels (the layer's `channels`) whose optimizer
state fits the plan's sample_budget: a channel of layer l takes
channel_cost_l bytes of it. The arena keeps one pool of exactly
sample_budget bytes for the state of the chosen channels (static layers
keep their own), so the budget bounds the memory however the draw falls.

Generator: SplitMix64. mix(z) = z ^ z >> 31 after
z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9 and z = (z ^ z >> 27) *
0x94D049BB133111EB (64-bit); state = mix(seed << 32 | epoch); each draw
adds 0x9E3779B97F4A7C15 to the state and returns the top 32 bits of
mix(state). Bounded integers in [0, n): Lemire's multiply-shift with
rejection, which is unbiased.

Algorithm: number the candidates of all sampled layers 0..N-1 in
layer-table order; shuffle them (Fisher-Yates, i from N-1 down to 1, swap
with j = bounded(i + 1)); walk the shuffled order with remaining =
sample_budget, taking a candidate whenever its layer's channel_cost <=
remaining (the walk never stops early, so no untaken candidate fits at
the end); list each layer's taken channels ascending. Within a layer all
channels are equally likely; across layers cheaper channels are likelier.
A layer may get no channel in an epoch. Each epoch's state starts at zero:
residuals (the sub-step remainders, under half a quantization step per
weight), momentum and partial batch sums of sampled channels are dropped.
"""

from tflm_training.errors import InvalidArgumentError

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_GAMMA = 0x9E3779B97F4A7C15


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class SplitMix:
    """tt_sampler_rng: SplitMix64 seeded from (seed, epoch)."""

    def __init__(self, seed, epoch):
        if not (0 <= seed <= _MASK32 and 0 <= epoch <= _MASK32):
            raise InvalidArgumentError("seed and epoch must be in [0, 2**32)")
        self.state = _mix((seed << 32) | epoch)

    def next32(self):
        """tt_sampler_next."""
        self.state = (self.state + _GAMMA) & _MASK64
        return _mix(self.state) >> 32

    def below(self, bound):
        """tt_sampler_below: uniform in [0, bound), bound >= 1 (Lemire)."""
        m = self.next32() * bound
        low = m & _MASK32
        if low < bound:
            threshold = ((1 << 32) - bound) % bound
            while low < threshold:
                m = self.next32() * bound
                low = m & _MASK32
        return m >> 32

    def shuffle(self, count):
        """tt_sampler_shuffle: a uniformly random permutation of range(count)."""
        order = list(range(count))
        for i in range(count, 1, -1):
            j = self.below(i)
            order[i - 1], order[j] = order[j], order[i - 1]
        return order


def sample_channels(plan, epoch):
    """{operator index: ascending channels} that each "sampled" layer of
    `plan` (a TrainingPlan) trains in epoch `epoch`."""
    sampled = [layer for layer in plan.layers if layer.update == "sampled"]
    owners = [(layer, channel) for layer in sampled for channel in layer.channels]
    taken = {layer.operator_index: [] for layer in sampled}
    if not owners:
        return taken
    remaining = plan.sample_budget
    for index in SplitMix(plan.seed, epoch).shuffle(len(owners)):
        layer, channel = owners[index]
        if layer.channel_cost <= remaining:
            remaining -= layer.channel_cost
            taken[layer.operator_index].append(channel)
    return {op: sorted(channels) for op, channels in taken.items()}
