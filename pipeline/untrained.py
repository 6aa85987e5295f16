r"""Zoo architectures as int8 .tflite files without training: their flash
and RAM needs depend on shapes only, so a model converted with random
weights (convert_untrained) measures as the trained one does
(planning.footprint measures it; tools/footprint.py prints it).
"""

import numpy as np
import tf_keras as keras

from pipeline import qat, zoo


def randomize_biases(model, rng):
    """Non-zero BatchNormalization shifts and statistics, and Dense biases,
    as a trained model has: the converter stores identical constants (the
    all-zero biases of a fresh model) once, which would understate flash."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    gamma * rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    variance * rng.uniform(0.5, 1.5, variance.shape),
                ]
            )
        elif isinstance(layer, keras.layers.Dense) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))


def convert_untrained(config, samples=4, seed=0):
    """An int8 .tflite of a zoo config with random weights: quantize,
    activation ranges from random inputs in [0, 1], convert. Its flash and
    RAM needs are those of the trained model."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = zoo.build(config)
    randomize_biases(model, np.random.RandomState(seed))
    qat_model = qat.quantize(model)
    x = np.random.RandomState(seed).rand(samples, *config.input_shape).astype(np.float32)
    qat.init_activation_ranges(qat_model, model, x, batch=samples)
    qat.set_input_range(qat_model)
    return qat.convert(qat_model, config.input_shape, x)
