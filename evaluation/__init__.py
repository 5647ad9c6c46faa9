"""The paper's Tables 2 and 3 from a model (or pipeline) and a built dataset."""
