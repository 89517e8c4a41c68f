"""Who hears about what: which audited events are announced (announce), the mails they
become (mail), webhooks, email links that decide a release, and what mail and webhook
deliveries share (outbound)."""
