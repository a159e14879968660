// Network safety: cloud SDKs must never reach for instance metadata or default credentials here.
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.METADATA_SERVER_DETECTION = 'none';
