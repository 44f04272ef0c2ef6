with final as (
    select c.id, c.sweep, c.lambda_safe, c.lambda_helpful, c.is_base, c.fingerprint, c.manifest,
           cap.mean_nll
    from ev.checkpoints c
    left join ev.capability cap on cap.checkpoint_fp = c.fingerprint
)
select * from final order by is_base desc, lambda_safe, lambda_helpful
