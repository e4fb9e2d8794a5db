enum CampaignProjectionsModule {}
