"""Neural denoisers on labkit's interfaces: preconditioning, networks, training, image data.

A trained network is a labkit ``Denoiser`` ``D(x, sigma)`` (through :class:`EDMPrecond`), so every
sampler, metric and study that runs on an exact target runs on it unchanged. See docs/neural.md
(toy denoisers, training, diagnostics) and docs/images.md (UNet, image data, image metrics).
"""

from .data import (DigitsSplit, ImageData, load_cifar10, load_dataset, load_digits,
                   load_image_folder, save_image_grid, split_digits, to_uint8)
from .diagnostics import (BySigma, ErrorBySigma, denoiser_error_by_sigma, explained_variance,
                          gaussian_reference, memorized_fraction, nearest_training_distance,
                          sigma_threshold)
from .features import DigitsFeatureNet, digits_feature_net
from .fp_penalty import fp_penalty
from .image_metrics import image_features, image_frechet_distance, image_precision_recall
from .inception import InceptionV3Features, load_inception_features
from .mlp import MLP, mlp_denoiser
from .precond import EDMPrecond, edm_coefficients
from .training import TrainConfig, TrainResult, edm_loss, load_checkpoint, train
from .unet import UNet, linear_skip_scales, unet_denoiser

__all__ = ["EDMPrecond", "edm_coefficients", "MLP", "mlp_denoiser", "TrainConfig", "TrainResult",
           "edm_loss", "fp_penalty", "load_checkpoint", "train", "ImageData", "DigitsSplit",
           "load_digits", "split_digits", "load_image_folder", "load_cifar10", "load_dataset",
           "save_image_grid", "to_uint8", "DigitsFeatureNet", "digits_feature_net",
           "image_features", "image_frechet_distance", "image_precision_recall",
           "InceptionV3Features", "load_inception_features", "BySigma", "ErrorBySigma",
           "denoiser_error_by_sigma", "explained_variance", "gaussian_reference",
           "memorized_fraction", "nearest_training_distance", "sigma_threshold", "UNet",
           "linear_skip_scales", "unet_denoiser"]
