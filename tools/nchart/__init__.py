"""nchart: renders, lints and drives the eks-neuron charts for a Neuron instance type."""

__version__ = "0.3.0"
