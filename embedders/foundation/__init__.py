"""Foundation-model adapters (one module per family); importing this package registers them."""
