"""The model's transition tables are what every recorded state change is checked against."""

import pytest

from libervia.core.command_kit import Batch
from libervia.core.commands import Commands
from libervia.core.model import EPISODE_TRANSITIONS, SITUATION_TRANSITIONS, EpisodeState, SituationStatus
from libervia.errors import ApiError


@pytest.mark.parametrize(("old", "new"), [(old, new) for old in SituationStatus for new in SituationStatus])
def test_a_situation_change_is_recorded_only_when_the_table_allows_it(old: SituationStatus,
                                                                      new: SituationStatus) -> None:
    batch = Batch(actor="key_test", request_id="r1")
    if new in SITUATION_TRANSITIONS[old]:
        Commands._situation_status_event(batch, "sit_1", None, old, new, "2026-01-01T00:00:00.000Z")
        assert [(d.evento, d.payload["de"], d.payload["para"]) for d in batch.drafts] == [
            ("SITUACAO_STATUS_ALTERADO", old, new)]
    else:
        with pytest.raises(ApiError) as refused:
            Commands._situation_status_event(batch, "sit_1", None, old, new, "2026-01-01T00:00:00.000Z")
        assert refused.value.status == 409 and batch.drafts == []


@pytest.mark.parametrize(("old", "new"), [(old, new) for old in EpisodeState for new in EpisodeState])
def test_an_episode_change_is_recorded_only_when_the_table_allows_it(old: EpisodeState, new: EpisodeState) -> None:
    batch = Batch(actor="key_test", request_id="r1")
    if new in EPISODE_TRANSITIONS[old]:
        Commands._episode_state_event(batch, "epi_1", old, new, "2026-01-01T00:00:00.000Z")
        assert len(batch.drafts) == 1
    else:
        with pytest.raises(ApiError):
            Commands._episode_state_event(batch, "epi_1", old, new, "2026-01-01T00:00:00.000Z")
        assert batch.drafts == []
