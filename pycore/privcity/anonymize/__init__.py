"""Anonymization on the device: k-anonymity (Mondrian), l-diversity, t-closeness, location
privacy, pseudonyms, and the measured re-identification risk that remains."""
