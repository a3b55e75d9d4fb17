"""A small typed forecasting library: numpy in, numpy out, no I/O and no clock."""
