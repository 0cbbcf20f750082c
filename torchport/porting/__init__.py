"""A Keras model file -> readable PyTorch: `torchport port` and `torchport.port.load_keras`."""
