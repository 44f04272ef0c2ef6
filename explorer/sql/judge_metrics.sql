with final as (
    select judge, judge_version, dataset, n_labels, agreement, kappa, confusion, computed_at
    from ev.judge_metrics
)
select * from final order by dataset, judge
