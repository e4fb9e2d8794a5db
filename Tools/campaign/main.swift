print("campaign: not yet")
