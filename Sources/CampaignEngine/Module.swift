/// Placeholder until the domain lands; see issue 3.
enum CampaignEngineModule {}
