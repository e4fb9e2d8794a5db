enum CampaignSnapshotsModule {}
