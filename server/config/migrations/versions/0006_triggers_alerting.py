"""Triggers, events, problems and alerting: the tables of the triggers-and-alerts issue, plus
interfaces (where the server reaches a host) and global macros.

Configuration: triggers (with their items, tags and dependencies), media types, users and user
groups with their media, actions with conditions and operations, maintenance with time periods.
Runtime data: trigger and item state, host availability, events, problems, acknowledgements,
escalations and the alert log.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table('actions',
    sa.Column('actionid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('eventsource', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('esc_period', sa.String(length=255), server_default='1h', nullable=False),
    sa.Column('evaltype', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pause_suppressed', sa.Integer(), server_default='1', nullable=False),
    sa.Column('notify_if_canceled', sa.Integer(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('actionid'),
    sa.UniqueConstraint('name')
    )
    op.create_table('events',
    sa.Column('eventid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.Integer(), nullable=False),
    sa.Column('object', sa.Integer(), nullable=False),
    sa.Column('objectid', sa.Integer(), nullable=False),
    sa.Column('clock', sa.Integer(), nullable=False),
    sa.Column('ns', sa.Integer(), server_default='0', nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('acknowledged', sa.Integer(), server_default='0', nullable=False),
    sa.Column('name', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('severity', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('eventid')
    )
    op.create_index('events_clock', 'events', ['source', 'clock'], unique=False)
    op.create_index('events_source_object', 'events', ['source', 'object', 'objectid', 'clock'], unique=False)
    op.create_table('global_macros',
    sa.Column('globalmacroid', sa.Integer(), nullable=False),
    sa.Column('macro', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=2048), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('globalmacroid'),
    sa.UniqueConstraint('macro')
    )
    op.create_table('maintenances',
    sa.Column('maintenanceid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('maintenance_type', sa.Integer(), server_default='0', nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('active_since', sa.Integer(), server_default='0', nullable=False),
    sa.Column('active_till', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('maintenanceid'),
    sa.UniqueConstraint('name')
    )
    op.create_table('media_types',
    sa.Column('mediatypeid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('type', sa.Integer(), nullable=False),
    sa.Column('status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('params', sa.Text(), server_default='{}', nullable=False),
    sa.Column('maxattempts', sa.Integer(), server_default='3', nullable=False),
    sa.Column('attempt_interval', sa.String(length=32), server_default='10s', nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('mediatypeid'),
    sa.UniqueConstraint('name')
    )
    op.create_table('users',
    sa.Column('userid', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), server_default='', nullable=False),
    sa.Column('surname', sa.String(length=100), server_default='', nullable=False),
    sa.Column('passwd', sa.String(length=255), server_default='', nullable=False),
    sa.Column('roleid', sa.Integer(), server_default='1', nullable=False),
    sa.Column('attempt_failed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('attempt_clock', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('userid'),
    sa.UniqueConstraint('username')
    )
    op.create_table('usrgrp',
    sa.Column('usrgrpid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('usrgrpid'),
    sa.UniqueConstraint('name')
    )
    op.create_table('acknowledges',
    sa.Column('acknowledgeid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('userid', sa.Integer(), nullable=True),
    sa.Column('eventid', sa.BigInteger(), nullable=False),
    sa.Column('clock', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), server_default='', nullable=False),
    sa.Column('action', sa.Integer(), server_default='0', nullable=False),
    sa.Column('old_severity', sa.Integer(), server_default='0', nullable=False),
    sa.Column('new_severity', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['eventid'], ['events.eventid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('acknowledgeid')
    )
    op.create_index(op.f('ix_acknowledges_eventid'), 'acknowledges', ['eventid'], unique=False)
    op.create_table('action_conditions',
    sa.Column('conditionid', sa.Integer(), nullable=False),
    sa.Column('actionid', sa.Integer(), nullable=False),
    sa.Column('conditiontype', sa.Integer(), nullable=False),
    sa.Column('operator', sa.Integer(), server_default='0', nullable=False),
    sa.Column('value', sa.String(length=255), server_default='', nullable=False),
    sa.Column('value2', sa.String(length=255), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['actionid'], ['actions.actionid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('conditionid')
    )
    op.create_index(op.f('ix_action_conditions_actionid'), 'action_conditions', ['actionid'], unique=False)
    op.create_table('alerts',
    sa.Column('alertid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('actionid', sa.Integer(), nullable=True),
    sa.Column('eventid', sa.BigInteger(), nullable=True),
    sa.Column('p_eventid', sa.BigInteger(), nullable=True),
    sa.Column('userid', sa.Integer(), nullable=True),
    sa.Column('mediatypeid', sa.Integer(), nullable=True),
    sa.Column('clock', sa.Integer(), nullable=False),
    sa.Column('sendto', sa.String(length=1024), server_default='', nullable=False),
    sa.Column('subject', sa.String(length=255), server_default='', nullable=False),
    sa.Column('message', sa.Text(), server_default='', nullable=False),
    sa.Column('status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('retries', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('esc_step', sa.Integer(), server_default='0', nullable=False),
    sa.Column('alerttype', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sent_clock', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['actionid'], ['actions.actionid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['eventid'], ['events.eventid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mediatypeid'], ['media_types.mediatypeid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['userid'], ['users.userid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('alertid')
    )
    op.create_index('alerts_status', 'alerts', ['status', 'clock'], unique=False)
    op.create_index(op.f('ix_alerts_eventid'), 'alerts', ['eventid'], unique=False)
    op.create_table('escalations',
    sa.Column('escalationid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('actionid', sa.Integer(), nullable=False),
    sa.Column('eventid', sa.BigInteger(), nullable=False),
    sa.Column('r_eventid', sa.BigInteger(), nullable=True),
    sa.Column('acknowledgeid', sa.BigInteger(), nullable=True),
    sa.Column('esc_step', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('nextcheck', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['actionid'], ['actions.actionid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['eventid'], ['events.eventid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('escalationid'),
    sa.UniqueConstraint('actionid', 'eventid', 'acknowledgeid', name='escalations_action_event')
    )
    op.create_index('escalations_nextcheck', 'escalations', ['status', 'nextcheck'], unique=False)
    op.create_table('event_tags',
    sa.Column('eventtagid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('eventid', sa.BigInteger(), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['eventid'], ['events.eventid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('eventtagid')
    )
    op.create_index(op.f('ix_event_tags_eventid'), 'event_tags', ['eventid'], unique=False)
    op.create_table('host_availability',
    sa.Column('hostid', sa.Integer(), nullable=False),
    sa.Column('available', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('lastaccess', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['hostid'], ['hosts.hostid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hostid')
    )
    op.create_table('interfaces',
    sa.Column('interfaceid', sa.Integer(), nullable=False),
    sa.Column('hostid', sa.Integer(), nullable=False),
    sa.Column('type', sa.Integer(), nullable=False),
    sa.Column('main', sa.Integer(), server_default='1', nullable=False),
    sa.Column('useip', sa.Integer(), server_default='1', nullable=False),
    sa.Column('ip', sa.String(length=64), server_default='', nullable=False),
    sa.Column('dns', sa.String(length=255), server_default='', nullable=False),
    sa.Column('port', sa.String(length=64), server_default='10050', nullable=False),
    sa.Column('details', sa.Text(), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['hostid'], ['hosts.hostid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('interfaceid')
    )
    op.create_index(op.f('ix_interfaces_hostid'), 'interfaces', ['hostid'], unique=False)
    op.create_table('maintenances_groups',
    sa.Column('maintenanceid', sa.Integer(), nullable=False),
    sa.Column('groupid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['groupid'], ['host_groups.groupid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['maintenanceid'], ['maintenances.maintenanceid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('maintenanceid', 'groupid')
    )
    op.create_table('maintenances_hosts',
    sa.Column('maintenanceid', sa.Integer(), nullable=False),
    sa.Column('hostid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['hostid'], ['hosts.hostid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['maintenanceid'], ['maintenances.maintenanceid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('maintenanceid', 'hostid')
    )
    op.create_table('media',
    sa.Column('mediaid', sa.Integer(), nullable=False),
    sa.Column('userid', sa.Integer(), nullable=False),
    sa.Column('mediatypeid', sa.Integer(), nullable=False),
    sa.Column('sendto', sa.String(length=1024), nullable=False),
    sa.Column('active', sa.Integer(), server_default='0', nullable=False),
    sa.Column('severity', sa.Integer(), server_default='63', nullable=False),
    sa.Column('period', sa.String(length=1024), server_default='1-7,00:00-24:00', nullable=False),
    sa.ForeignKeyConstraint(['mediatypeid'], ['media_types.mediatypeid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userid'], ['users.userid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('mediaid')
    )
    op.create_index(op.f('ix_media_userid'), 'media', ['userid'], unique=False)
    op.create_table('operations',
    sa.Column('operationid', sa.Integer(), nullable=False),
    sa.Column('actionid', sa.Integer(), nullable=False),
    sa.Column('recovery', sa.Integer(), server_default='0', nullable=False),
    sa.Column('operationtype', sa.Integer(), server_default='0', nullable=False),
    sa.Column('esc_step_from', sa.Integer(), server_default='1', nullable=False),
    sa.Column('esc_step_to', sa.Integer(), server_default='1', nullable=False),
    sa.Column('esc_period', sa.String(length=255), server_default='0', nullable=False),
    sa.Column('mediatypeid', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=255), server_default='', nullable=False),
    sa.Column('message', sa.Text(), server_default='', nullable=False),
    sa.Column('command', sa.Text(), server_default='', nullable=False),
    sa.Column('execute_on', sa.Integer(), server_default='1', nullable=False),
    sa.ForeignKeyConstraint(['actionid'], ['actions.actionid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mediatypeid'], ['media_types.mediatypeid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('operationid')
    )
    op.create_index(op.f('ix_operations_actionid'), 'operations', ['actionid'], unique=False)
    op.create_table('problems',
    sa.Column('eventid', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.Integer(), nullable=False),
    sa.Column('object', sa.Integer(), nullable=False),
    sa.Column('objectid', sa.Integer(), nullable=False),
    sa.Column('clock', sa.Integer(), nullable=False),
    sa.Column('ns', sa.Integer(), server_default='0', nullable=False),
    sa.Column('r_eventid', sa.BigInteger(), nullable=True),
    sa.Column('r_clock', sa.Integer(), server_default='0', nullable=False),
    sa.Column('r_ns', sa.Integer(), server_default='0', nullable=False),
    sa.Column('userid', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('acknowledged', sa.Integer(), server_default='0', nullable=False),
    sa.Column('severity', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['eventid'], ['events.eventid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['r_eventid'], ['events.eventid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('eventid')
    )
    op.create_index('problems_clock', 'problems', ['clock'], unique=False)
    op.create_index('problems_open', 'problems', ['source', 'object', 'objectid', 'r_eventid'], unique=False)
    op.create_table('timeperiods',
    sa.Column('timeperiodid', sa.Integer(), nullable=False),
    sa.Column('maintenanceid', sa.Integer(), nullable=False),
    sa.Column('timeperiod_type', sa.Integer(), server_default='0', nullable=False),
    sa.Column('every', sa.Integer(), server_default='1', nullable=False),
    sa.Column('month', sa.Integer(), server_default='0', nullable=False),
    sa.Column('dayofweek', sa.Integer(), server_default='0', nullable=False),
    sa.Column('day', sa.Integer(), server_default='0', nullable=False),
    sa.Column('start_time', sa.Integer(), server_default='0', nullable=False),
    sa.Column('period', sa.Integer(), server_default='3600', nullable=False),
    sa.Column('start_date', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['maintenanceid'], ['maintenances.maintenanceid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('timeperiodid')
    )
    op.create_index(op.f('ix_timeperiods_maintenanceid'), 'timeperiods', ['maintenanceid'], unique=False)
    op.create_table('triggers',
    sa.Column('triggerid', sa.Integer(), nullable=False),
    sa.Column('hostid', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('expression', sa.Text(), nullable=False),
    sa.Column('recovery_mode', sa.Integer(), server_default='0', nullable=False),
    sa.Column('recovery_expression', sa.Text(), server_default='', nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('type', sa.Integer(), server_default='0', nullable=False),
    sa.Column('manual_close', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('comments', sa.Text(), server_default='', nullable=False),
    sa.Column('opdata', sa.String(length=255), server_default='', nullable=False),
    sa.Column('templateid', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['hostid'], ['hosts.hostid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['templateid'], ['triggers.triggerid'], name='triggers_templateid_fk', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('triggerid'),
    sa.UniqueConstraint('hostid', 'description', name='triggers_host_name')
    )
    op.create_index(op.f('ix_triggers_hostid'), 'triggers', ['hostid'], unique=False)
    op.create_index(op.f('ix_triggers_templateid'), 'triggers', ['templateid'], unique=False)
    op.create_table('users_groups',
    sa.Column('userid', sa.Integer(), nullable=False),
    sa.Column('usrgrpid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['userid'], ['users.userid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['usrgrpid'], ['usrgrp.usrgrpid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('userid', 'usrgrpid')
    )
    op.create_table('item_state',
    sa.Column('itemid', sa.Integer(), nullable=False),
    sa.Column('state', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('clock', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['itemid'], ['items.itemid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('itemid')
    )
    op.create_table('op_groups',
    sa.Column('operationid', sa.Integer(), nullable=False),
    sa.Column('usrgrpid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['operationid'], ['operations.operationid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['usrgrpid'], ['usrgrp.usrgrpid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('operationid', 'usrgrpid')
    )
    op.create_table('op_users',
    sa.Column('operationid', sa.Integer(), nullable=False),
    sa.Column('userid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['operationid'], ['operations.operationid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userid'], ['users.userid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('operationid', 'userid')
    )
    op.create_table('trigger_depends',
    sa.Column('triggerid_down', sa.Integer(), nullable=False),
    sa.Column('triggerid_up', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['triggerid_down'], ['triggers.triggerid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['triggerid_up'], ['triggers.triggerid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('triggerid_down', 'triggerid_up')
    )
    op.create_table('trigger_items',
    sa.Column('triggerid', sa.Integer(), nullable=False),
    sa.Column('itemid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['itemid'], ['items.itemid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['triggerid'], ['triggers.triggerid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('triggerid', 'itemid')
    )
    op.create_index(op.f('ix_trigger_items_itemid'), 'trigger_items', ['itemid'], unique=False)
    op.create_table('trigger_rtdata',
    sa.Column('triggerid', sa.Integer(), nullable=False),
    sa.Column('value', sa.Integer(), server_default='0', nullable=False),
    sa.Column('state', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('lastchange', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['triggerid'], ['triggers.triggerid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('triggerid')
    )
    op.create_table('trigger_tags',
    sa.Column('triggertagid', sa.Integer(), nullable=False),
    sa.Column('triggerid', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['triggerid'], ['triggers.triggerid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('triggertagid')
    )
    op.create_index(op.f('ix_trigger_tags_triggerid'), 'trigger_tags', ['triggerid'], unique=False)


def downgrade() -> None:
    op.drop_table('trigger_tags')
    op.drop_table('trigger_rtdata')
    op.drop_table('trigger_items')
    op.drop_table('trigger_depends')
    op.drop_table('op_users')
    op.drop_table('op_groups')
    op.drop_table('item_state')
    op.drop_table('users_groups')
    op.drop_table('triggers')
    op.drop_table('timeperiods')
    op.drop_table('problems')
    op.drop_table('operations')
    op.drop_table('media')
    op.drop_table('maintenances_hosts')
    op.drop_table('maintenances_groups')
    op.drop_table('interfaces')
    op.drop_table('host_availability')
    op.drop_table('event_tags')
    op.drop_table('escalations')
    op.drop_table('alerts')
    op.drop_table('action_conditions')
    op.drop_table('acknowledges')
    op.drop_table('usrgrp')
    op.drop_table('users')
    op.drop_table('media_types')
    op.drop_table('maintenances')
    op.drop_table('global_macros')
    op.drop_table('events')
    op.drop_table('actions')
