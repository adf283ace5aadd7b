"""The fake PSP's HTTP face: Stripe-shaped endpoints, a hosted page, signed webhooks."""
