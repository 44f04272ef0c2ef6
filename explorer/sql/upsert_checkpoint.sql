insert or replace into checkpoints (id, sweep, lambda_safe, lambda_helpful, is_base, fingerprint, base_fingerprint,
                                    recipe, manifest)
values ($id, $sweep, $lambda_safe, $lambda_helpful, $is_base, $fingerprint, $base_fingerprint, $recipe, $manifest)
