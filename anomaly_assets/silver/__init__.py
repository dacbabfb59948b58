"""Bronze to silver: the feature catalogue, the user profile, one silver step from bounded state, and silver's assets and checks."""
