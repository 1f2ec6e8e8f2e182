"""Moving the hub's objects from one location to another, verified object by object."""
