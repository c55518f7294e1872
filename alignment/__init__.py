"""alignment: robust DPO (rDPO, cDPO) on TRL when preference labels are flipped."""
