"""Raw movie clips to the SoS dataset; also the sample-clip generator used by the demo and tests."""
