"""`make mutate`: mutation testing of the domain layer (mutmut), on demand."""
